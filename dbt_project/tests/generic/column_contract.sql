{#
    The column contract of a model in one query: unique columns (or expressions) have no duplicate values,
    required columns are not null, bounded columns lie in [min, max] (inclusive; null passes, not_null says
    whether it may be null), categorical columns take one of their accepted values, references point at an
    existing row of another relation (relationships; {column: ["{{ ref('parent') }}", parent_column]}), row
    rules hold on every row ({label: boolean expression}) and group rules on every group
    ({group column: {label: boolean aggregate expression}}; a null result counts as a violation, so say what
    an empty filter means, e.g. with coalesce). Returns one row per violated rule with the number of
    offending rows (groups, for group rules), so a failure names the column and the rule.
    One check per model instead of one per column and rule: every dbt test is a query, and a Dagster
    asset-check event, on every rhythm.
#}
{% test column_contract(model, unique=[], not_null=[], ranges={}, accepted_values={}, references={},
                        row_rules={}, group_rules={}) %}
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
{%- for label, condition in row_rules.items() -%}
    {%- do rules.append((label, 'count(*) filter (where (' ~ condition ~ ') is not true)')) -%}
{%- endfor -%}
{%- for column, group_conditions in group_rules.items() -%}
    {%- for label, condition in group_conditions.items() -%}
        {%- do rules.append((label, '(select count(*) from (select 1 from ' ~ model ~ ' group by ' ~ column
                                    ~ ' having (' ~ condition ~ ') is not true))')) -%}
    {%- endfor -%}
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
