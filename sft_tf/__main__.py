"""`python -m sft_tf` is `sft-tf`."""

from sft_tf.cli import run

if __name__ == "__main__":
    run()
