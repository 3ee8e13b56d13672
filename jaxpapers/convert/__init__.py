"""Converters from officially released checkpoints to this suite's parameter trees."""
