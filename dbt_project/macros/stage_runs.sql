{# on-run-end: one meta.stage_runs row per model dbt built in this invocation (its execute timing and, for
   tables, its row count after the build: dbt-duckdb reports no rows_affected), so
   monitoring.memory_pipeline_metrics covers dbt models as well as the Python assets. Skipped when the store
   has no meta.stage_runs (a store not bootstrapped by codex_dreams.store). #}
{% macro record_stage_runs(results) %}
    {% if not execute %}{{ return('select 1') }}{% endif %}
    {% set rows = [] %}
    {% for result in results %}
        {% if result.node.resource_type == 'model' and result.status == 'success' %}
            {% for timing in result.timing %}
                {% if timing.name == 'execute' and timing.started_at and timing.completed_at %}
                    {% set affected = (result.adapter_response or {}).get('rows_affected') %}
                    {% set counted = 'null' %}
                    {% if result.node.config.materialized in ('table', 'incremental') and result.node.relation_name %}
                        {% set counted = '(select count(*) from ' ~ result.node.relation_name ~ ')' %}
                    {% endif %}
                    {% do rows.append("('" ~ result.node.fqn[1] ~ "', '" ~ result.node.name ~ "', '"
                        ~ invocation_id ~ "', timestamp '" ~ timing.started_at.strftime('%Y-%m-%d %H:%M:%S.%f')
                        ~ "', timestamp '" ~ timing.completed_at.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "', "
                        ~ (affected if affected is not none and affected >= 0 else counted) ~ ", 'dbt')") %}
                {% endif %}
            {% endfor %}
        {% endif %}
    {% endfor %}
    {% if rows %}
        {% set exists = run_query("select count(*) from duckdb_tables() where schema_name = 'meta' and table_name = 'stage_runs'") %}
        {% if exists.columns[0].values()[0] > 0 %}
            {{ return("insert into meta.stage_runs (stage, asset, run_id, started_at, finished_at, rows, runner) values " ~ rows | join(', ')) }}
        {% endif %}
    {% endif %}
    {{ return('select 1') }}
{% endmacro %}
