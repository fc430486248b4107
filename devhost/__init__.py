"""The local Azure Functions + Durable Functions host for mlpipe (not deployed to Azure)."""
