"""The emotion bank: for one encoder layer and one reference emotion, an axis and a prosody
delta per other emotion (`build`), loaded and mixed ("happy:0.5,surprise:0.5") for steering
(`bank`)."""

from emosteer.bank.bank import (
    BankConfig,
    EmotionBank,
    Mix,
    bank_steerer,
    mix_label,
    parse_mix,
)
from emosteer.bank.build import (
    AxisResult,
    build_axes,
    build_axis_dirs,
    build_bank,
    diagnostics_table,
)

__all__ = ["AxisResult", "BankConfig", "EmotionBank", "Mix", "bank_steerer", "build_axes",
           "build_axis_dirs", "build_bank", "diagnostics_table", "mix_label", "parse_mix"]
