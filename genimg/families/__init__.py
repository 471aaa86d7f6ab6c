"""The built-in model families, one module each (see ``genimg.train.family``).

Importing a module registers its families: ``genimg.families.gan`` ("gan"), ``.vae`` ("vae",
"cvae"), ``.autoencoder`` ("ae", "dae"), ``.classifier`` ("classifier"), ``.detector``
("detector"). A new family is a module like these -- anywhere, e.g. in a forked experiment
file -- plus its models and its experiment; see ``docs/architecture.md``.
"""
