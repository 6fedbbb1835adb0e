"""Fine-tune Facere into Facere+ as the original project did:
`python fashionfail/models/train_facere_plus.py ...
--pretrained_model_path saved_models/facere_base.ckpt`.

Same code as the DVC stage `finetune-facere-plus`; run with --help for the flags.
"""

from fashionfail.models.seed_cli import main_plus

if __name__ == "__main__":
    main_plus()
