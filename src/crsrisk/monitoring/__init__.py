"""Monitoring in use: audited predictions joined with the outcomes observed later, judged against a plan.

``crsrisk monitor`` (``crsrisk.monitoring.run.monitor``): the log is streamed (``stream``), joined by pseudonymous
patient key and landmark hour with an outcome cohort (``join``), summarised per period, model version and landmark
(``figures``, ``drift``), judged against the monitoring plan (``plan``, ``default_plan.yaml``) and written as
``monitor.json``, an HTML report (``report``, ``plots``) and an MLflow run (``tracking``).
"""
