"""KeyboardInterrupt raised by the code itself, not by a signal: since 3.8 an
uncaught KeyboardInterrupt makes Python end itself with SIGINT (status 130)."""


def interrupted():
    raise KeyboardInterrupt


def main():
    interrupted()


print("before")
main()
