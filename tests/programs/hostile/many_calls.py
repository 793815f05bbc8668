"""Makes 600,000 events, then says it finished: the run that meets a full disk."""


def step(i):
    return i + 1


total = 0
for i in range(300000):
    total = step(total)
print("finished", total)
