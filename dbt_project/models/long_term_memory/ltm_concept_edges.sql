-- The semantic network's edges: concepts mentioned by the same long-term memory (concept_a < concept_b).
--   cooccurrences = memories mentioning both
--   weight        = cooccurrences / sqrt(frequency_a * frequency_b), in (0, 1] (Ochiai / cosine of the
--                   concepts' memory sets: 1 when they always occur together)
--   pmi           = ln(P(a, b) / (P(a) P(b))) over long-term memories (reported, not used for the weight:
--                   PMI overrates pairs seen once)
with mentions as (
    select distinct memory_id, concept from {{ ref('ltm_memory_concepts') }}
),

concepts as (
    select concept, frequency from {{ ref('ltm_concepts') }}
),

totals as (
    select count(distinct memory_id) as memories from mentions
),

pairs as (
    select a.concept as concept_a, b.concept as concept_b, count(*) as cooccurrences
    from mentions as a
    inner join mentions as b on b.memory_id = a.memory_id and a.concept < b.concept
    group by a.concept, b.concept
),

final as (
    select
        p.concept_a,
        p.concept_b,
        p.cooccurrences,
        p.cooccurrences / sqrt(ca.frequency * cb.frequency) as weight,
        ln(p.cooccurrences * t.memories / (ca.frequency * cb.frequency)) as pmi
    from pairs as p
    inner join concepts as ca on ca.concept = p.concept_a
    inner join concepts as cb on cb.concept = p.concept_b
    cross join totals as t
)

select * from final
