import os


def where():
    return ascii(os.path.basename(os.getcwd())), ascii(os.path.basename(__file__))
