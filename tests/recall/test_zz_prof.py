import sys, time
sys.path.insert(0, "tests/recall")
from recall_store import CORPUS, LINKS, write_store, publish

def test_prof(settings, corpus_vectors):
    t0 = time.perf_counter()
    from codex_dreams.store import open_store
    with open_store(settings):
        pass
    t1 = time.perf_counter()
    write_store(settings, CORPUS, corpus_vectors, LINKS)
    t2 = time.perf_counter()
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable()
    publish(settings)
    pr.disable()
    t3 = time.perf_counter()
    print(f"\nbootstrap {t1-t0:.2f} write {t2-t1:.2f} publish {t3-t2:.2f}")
    pstats.Stats(pr).sort_stats('tottime').print_stats(8)
