"""Progress lines for the user: plain lines on stdout, flushed at once (logs and pipes too)."""


def say(message: str) -> None:
    print(message, flush=True)
