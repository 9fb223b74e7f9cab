from bench.harness import Bench, Row

NAME = "scaling"


def run(bench: Bench) -> list[Row]:
    return []
