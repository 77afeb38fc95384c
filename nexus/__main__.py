from nexus.cli.warm import run

run()
