{# Use the stage name itself as the schema (working_memory, short_term_memory, ...), not <target>_<name>,
   so dbt schemas, Dagster groups and Python modules share one name. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
