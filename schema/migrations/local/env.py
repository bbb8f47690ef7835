from schema.migrations.runner import run

run("local")
