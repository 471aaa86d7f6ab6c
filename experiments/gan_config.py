"""Config blocks shared by the GAN experiments (each experiment file sets its own values)."""

from __future__ import annotations

import ml_collections

from experiments import presets


def base_config() -> ml_collections.ConfigDict:
    """Every knob of a GAN run, with the DCGAN defaults."""
    config = ml_collections.ConfigDict()

    config.data = ml_collections.ConfigDict()
    config.data.source = "fashion_mnist"  # see genimg/data/sources.py for every form
    config.data.split = "train"
    config.data.image_size = 0  # 0 = the data's own size; else resize to this square size

    config.model = ml_collections.ConfigDict()
    config.model.family = "gan"
    config.model.arch = "dcgan"  # "dcgan" or "mlp"
    config.model.z_dim = 100
    config.model.g_width = 64  # DCGAN: channels of the last hidden G stage (doubles per stage)
    config.model.d_width = 64  # DCGAN: channels of the first D conv (doubles per stage)
    config.model.kernel_size = 5
    config.model.upsample_impl = "auto"  # layers.ConvTranspose: "auto" | "subpixel" | "transpose"
    config.model.conv_backend = "xla"  # DCGAN convs: "xla" | "onednn" (CPU, opt-in; README)
    config.model.d_dropout = 0.0
    config.model.spectral_norm = False
    config.model.g_hidden = (256, 512, 1024)  # MLP GAN
    config.model.d_hidden = (512, 256)  # MLP GAN
    config.model.loss = "nonsaturating"  # minimax | nonsaturating | hinge | lsgan | wgan
    config.model.n_critic = 1  # D updates per G update (each on its own real batch)
    config.model.gp_weight = 0.0  # WGAN-GP penalty weight (10 in the paper)
    config.model.r1_weight = 0.0  # R1 gamma
    config.model.ema_decay = 0.999  # EMA of G weights for sampling; 0 = sample raw weights

    config.optim = ml_collections.ConfigDict()
    config.optim.g_lr = 2e-4
    config.optim.d_lr = 2e-4  # a different value gives TTUR (Heusel et al. 2017)
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999

    config.train = ml_collections.ConfigDict()
    config.train.steps = 2000
    config.train.batch_size = 64  # global, split over the devices
    config.train.seed = 0
    config.train.num_devices = 0  # 0 = all local devices
    config.train.log_every = 50
    config.train.log_norms = True  # gradient/parameter norms in the metrics
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3
    config.train.sample_every = 500
    config.train.num_samples = 64  # images in each sample grid
    config.train.progress = True
    config.train.eval_every = 0  # > 0: FID etc. of samples vs the test split every N steps
    config.train.eval_num = 1000  # samples per periodic evaluation
    config.train.eval_extractor = "inception"  # or "domain:CLASSIFIER_WORKDIR" (offline)
    config.train.eval_metrics = "fid,kid,pr"
    return config


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Same code path in seconds on a CPU: narrow nets, a few steps of a small batch."""
    config.model.g_width = 8
    config.model.d_width = 8
    config.model.g_hidden = (32, 32, 64)
    config.model.d_hidden = (32, 16)
    presets.tiny_train(config)
    return config
