{#
    The column contract of a model in one scan: unique columns (or expressions) have no duplicate values,
    required columns are not null, bounded columns lie in [min, max] (inclusive; null passes, not_null says
    whether it may be null), categorical columns take one of their accepted values, references point at an
    existing row of another relation (relationships; {column: ["{{ ref('parent') }}", parent_column]}), and
    no group holds more than a maximum of rows (at_most_per_group: {column: max} or
    {column: [max, "row condition"]}). Returns one row per violated rule with the number of offending rows
    (groups, for at_most_per_group), so a failure names the column and the rule.
    One check per model instead of one per column and rule: every dbt test is a query, and a Dagster
    asset-check event, on every rhythm.
#}
{% test column_contract(model, unique=[], not_null=[], ranges={}, accepted_values={}, references={},
                        at_most_per_group={}) %}
{%- set rules = [] -%}
{%- for expression in unique -%}
    {%- do rules.append((expression ~ ' not unique',
                         'count(' ~ expression ~ ') - count(distinct ' ~ expression ~ ')')) -%}
{%- endfor -%}
{%- for column in not_null -%}
    {%- do rules.append((column ~ ' is null', 'count(*) filter (where ' ~ column ~ ' is null)')) -%}
{%- endfor -%}
{%- for column, bounds in ranges.items() -%}
    {%- do rules.append((column ~ ' outside [' ~ bounds[0] ~ ', ' ~ bounds[1] ~ ']',
                         'count(*) filter (where ' ~ column ~ ' < ' ~ bounds[0] ~ ' or ' ~ column ~ ' > '
                         ~ bounds[1] ~ ')')) -%}
{%- endfor -%}
{%- for column, values in accepted_values.items() -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}{%- do quoted.append("'" ~ value ~ "'") -%}{%- endfor -%}
    {%- do rules.append((column ~ ' not in (' ~ values | join(', ') ~ ')',
                         'count(*) filter (where ' ~ column ~ ' not in (' ~ quoted | join(', ') ~ '))')) -%}
{%- endfor -%}
{%- for column, target in references.items() -%}
    {%- do rules.append((column ~ ' without a row in ' ~ (target[0] | replace('"', '')) ~ '.' ~ target[1],
                         'count(*) filter (where ' ~ column ~ ' is not null and ' ~ column ~ ' not in (select '
                         ~ target[1] ~ ' from ' ~ target[0] ~ '))')) -%}
{%- endfor -%}
{%- for column, limit in at_most_per_group.items() -%}
    {%- set bound, condition = (limit, 'true') if limit is number or limit is string else (limit[0], limit[1]) -%}
    {%- do rules.append(('more than ' ~ bound ~ ' rows per ' ~ column ~ ('' if condition == 'true' else ' where ' ~ condition),
                         '(select count(*) from (select 1 from ' ~ model ~ ' where ' ~ condition ~ ' group by '
                         ~ column ~ ' having count(*) > ' ~ bound ~ '))')) -%}
{%- endfor -%}
{%- if not rules -%}
    {{ exceptions.raise_compiler_error("column_contract on " ~ model ~ " names no rule") }}
{%- endif -%}
with counts as (
    select
    {%- for label, offending in rules %}
        {{ offending }} as "{{ label }}"{{ "," if not loop.last }}
    {%- endfor %}
    from {{ model }}
)
select rule, offending_rows
from (unpivot counts on columns(*) into name rule value offending_rows)
where offending_rows > 0
{% endtest %}
