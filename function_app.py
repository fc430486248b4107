"""The Azure Functions app (v2 programming model): registers blueprints, nothing else."""

import azure.durable_functions as df
import azure.functions as func

from functions.activities import bp as activities
from functions.blob_triggers import bp as blob_triggers
from functions.http_api import bp as http_api
from functions.http_schedules import bp as http_schedules
from functions.queue_triggers import bp as queue_triggers
from functions.servicebus import bp as servicebus
from functions.timers import bp as timers
from orchestrations.debounce import bp as debounce
from orchestrations.pipeline_run import bp as pipeline_run

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api)
app.register_functions(activities)
app.register_functions(pipeline_run)
app.register_functions(queue_triggers)
app.register_functions(timers)
app.register_functions(http_schedules)
app.register_functions(blob_triggers)
app.register_functions(debounce)
app.register_functions(servicebus)
