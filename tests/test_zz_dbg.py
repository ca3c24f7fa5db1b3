import time
from tests.test_queue import *
def test_dbg(queue_settings, start_worker):
    settings = queue_settings.with_(max_deliveries=1)
    first, second = start_worker(settings, "first"), start_worker(settings, "second")
    t0 = time.monotonic()
    invoker, job = submit(settings, {**SLOW_SPEC, "width": 96, "height": 96})
    print("submitted", time.monotonic() - t0)
    victim = None
    while victim is None:
        for w in (first, second):
            if w.matching(r"tile 0: working"):
                victim = w
        time.sleep(0.01)
    print("found", time.monotonic() - t0, victim.name)
    victim.kill()
    print("killed", time.monotonic() - t0)
    time.sleep(4)
    for w in (first, second):
        print(w.name, *w.lines[-6:], sep="\n  ")
    print(jobs.status(invoker.store, job.id))
    invoker.close()
