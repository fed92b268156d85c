from scenario import Memory, at, write_memories, materialize_stages, query, topic_vector

def test_smoke(settings, resources):
    n = write_memories(settings, [Memory("m1", "hello", at(1), embedding=topic_vector(0)), Memory("m2", "x", at(2), enriched=False)])
    assert n == 2
    materialize_stages(resources, "working_memory", "short_term_memory")
    print(query(settings, "select * from short_term_memory.stm_memories"))
