"""Evaluators shared by several papers (GAN metrics, robust accuracy, face verification)."""
