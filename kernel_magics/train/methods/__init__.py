"""The training methods: the registry (:mod:`.registry`, the only list of them) and one file per method
(SFT, the preference family, GRPO, vision-language SFT) with the pieces only that method uses."""
