"""Tools for testing pipelines that use usercom-pipeline."""
