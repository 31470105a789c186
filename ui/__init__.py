"""Gradio UI and API: chat tab, review tab, rendering of explanations, named API endpoints."""
