"""The Azure Functions app (v2 programming model): registers blueprints, nothing else."""

import azure.durable_functions as df
import azure.functions as func

from functions.activities import bp as activities
from functions.http_api import bp as http_api
from orchestrations.pipeline_run import bp as pipeline_run

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api)
app.register_functions(activities)
app.register_functions(pipeline_run)
