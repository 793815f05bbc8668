"""Functions, classes and strings with names outside ASCII."""


def grüße(name):
    return "Grüße, " + name


class Ünïcode:
    def método(self):
        return "método"


def 函数():
    return "函数"


print(grüße("Welt"), Ünïcode().método(), 函数(), "✓")
