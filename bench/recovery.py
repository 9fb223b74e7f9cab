from bench.harness import Bench, Row

NAME = "recovery"


def run(bench: Bench) -> list[Row]:
    return []
