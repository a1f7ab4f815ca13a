from fedspace.cli import app

app(prog_name="fedspace")
