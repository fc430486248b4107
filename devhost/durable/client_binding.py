"""The durable client binding JSON the extension hands to `@app.durable_client_input` (DURABLE-NOTES §4.1).

`rpcBaseUrl` carries the host's internal RPC secret as URL user-info: the SDK builds every
management URL as f"{rpcBaseUrl}instances/..." and aiohttp turns user-info into an HTTP Basic
header, so the SDK's calls authenticate without the function key, while the public webhook URLs
(statusQueryGetUri, ...) carry `code=<function key>` exactly like the real host's.
"""

from __future__ import annotations

import json

WEBHOOK_PATH = "/runtime/webhooks/durabletask"


def binding_json(*, port: int, hub_name: str, function_key: str, rpc_secret: str,
                 connection_name: str | None = None) -> str:
    base = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    query = f"taskHub={hub_name}&connection=Storage&code={function_key}"
    instance = f"{base}/instances/INSTANCEID"
    return json.dumps({
        "taskHubName": hub_name,
        "connectionName": connection_name,
        "creationUrls": {
            "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?code={function_key}",
            "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                                                 f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}"
                                                 f"&code={function_key}",
        },
        "managementUrls": {
            "id": "INSTANCEID",
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        },
        "baseUrl": base,
        "requiredQueryStringParameters": f"code={function_key}",
        "rpcBaseUrl": f"http://rpc:{rpc_secret}@127.0.0.1:{port}{WEBHOOK_PATH}/",
    })
