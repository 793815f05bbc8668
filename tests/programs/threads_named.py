import threading


def work(n):
    total = 0
    for i in range(n):
        total += square(i)
    return total


def square(x):
    return x * x


def consume(gen, out):
    for item in gen:
        out.append(item)


def produce():
    for i in range(3):
        yield i


threads = [threading.Thread(target=work, args=(50,), name="worker-%d" % i) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()

# A generator started on the main thread and resumed on another.
shared = produce()
next(shared)
out = []
t = threading.Thread(target=consume, args=(shared, out), name="consumer")
t.start()
t.join()
print("consumed", out)
