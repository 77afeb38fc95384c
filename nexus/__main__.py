from nexus.warm import run

run()
