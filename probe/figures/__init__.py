"""Plotly figure builders shared by the CLI, the reports and the dashboard; each returns a go.Figure."""
from probe.figures.embedding_plot import embedding_figure
from probe.figures.passage import Passage, passage_from_recording
from probe.figures.probe_plots import probe_figure, sparse_figure
from probe.figures.saturation_plot import saturation_figure
from probe.figures.text_heatmap import text_heatmap, wrap_positions
from probe.figures.training_plots import samples_table, training_curve
from probe.figures.unit_heatmap import unit_heatmap

__all__ = ["Passage", "passage_from_recording", "text_heatmap", "wrap_positions", "unit_heatmap", "probe_figure",
           "sparse_figure", "saturation_figure", "embedding_figure", "training_curve", "samples_table"]
