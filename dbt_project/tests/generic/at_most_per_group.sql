{# No group has more than `max_count` rows matching `where` (e.g. at most the working-memory capacity of
   attended memories per window). #}
{% test at_most_per_group(model, column_name, max_count, where_clause='true') %}
select {{ column_name }} as grp, count(*) as n
from {{ model }}
where {{ where_clause }}
group by {{ column_name }}
having count(*) > {{ max_count }}
{% endtest %}
