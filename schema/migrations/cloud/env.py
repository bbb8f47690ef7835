from schema.migrations.runner import run

run("cloud")
