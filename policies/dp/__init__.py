"""Diffusion Policy, CNN variant (Chi et al. 2023): a FiLM-conditioned 1-D U-Net denoising action sequences."""
