"""The local Azure Functions + Durable Functions host for mlpipe (not deployed to Azure).

Entry points: `python -m devhost [--port 7071] [--app-root DIR]`, or `devhost.main(argv)`.
"""


def main(argv=None) -> int:
    from .cli import main as cli_main  # imported lazily: `import devhost.azurite` stays light

    return cli_main(argv)
