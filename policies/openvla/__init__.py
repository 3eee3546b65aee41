"""OpenVLA (Kim et al. 2024) and OpenVLA-OFT (Kim et al. 2025): a fused SigLIP + DINOv2 image encoder
projected into a causal Llama LM, trained from scratch here."""
