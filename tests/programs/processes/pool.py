"""A multiprocessing pool with the start method given: the workers square."""
import multiprocessing
import sys


def square(x):
    return x * x


if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    with context.Pool(2) as pool:
        print(sys.argv[1], sum(pool.map(square, range(200))))
