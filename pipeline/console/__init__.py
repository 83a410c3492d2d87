"""The web console of `usercom serve` (DELIVERY §8): what was delivered, what failed and why,
and a button that sends it again. On only with a console token; see `app.Console`."""

from pipeline.console.app import PREFIX, Console, Host, ServedApp

__all__ = ["PREFIX", "Console", "Host", "ServedApp"]
