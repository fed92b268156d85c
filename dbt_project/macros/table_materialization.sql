{#
    Tables, rebuilt with one `create or replace table ... as` statement. dbt-duckdb's default builds an
    intermediate table, renames the old one to a backup and the new one into place, then drops the backup,
    and looks up indexes and foreign keys on the way: half a dozen statements per table per rhythm, where
    DuckDB's transactional DDL does the same atomically in one (readers see the old table until the commit).
    SQL models without an enforced contract only (this project has neither Python models nor contracts:
    the column rules are the column_contract tests).
#}
{%- materialization table, adapter='duckdb' -%}

  {%- if model['language'] != 'sql' or config.get('contract').enforced -%}
    {{ exceptions.raise_compiler_error("the table materialization of this project builds SQL models without an "
                                       ~ "enforced contract; " ~ this ~ " is neither") }}
  {%- endif -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set target_relation = this.incorporate(type='table') -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {%- if existing_relation is not none and not existing_relation.is_table -%}
    {{ adapter.drop_relation(existing_relation) }}
  {%- endif -%}

  {%- set sql_header = config.get('sql_header', none) -%}
  {% call statement('main') -%}
    {{ sql_header if sql_header is not none }}
    create or replace table {{ target_relation }} as (
      {{ sql }}
    )
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{%- endmaterialization -%}
