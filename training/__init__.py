"""Corpora, enrolment preprocessing, synthetic data, discriminators, losses, pretraining and fine-tuning."""
