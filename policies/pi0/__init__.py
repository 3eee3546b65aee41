"""π0: a vision-language model with a flow-matching action expert (Black et al. 2024)."""
