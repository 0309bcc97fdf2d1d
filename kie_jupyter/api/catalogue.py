"""KIE's image catalogue as we know it: every image model on KIE's doc pages, and for each
either the name it is registered under (:mod:`.registry`) or why it is not.

A model is registered only when its fields could be confirmed on KIE's own page or a
verbatim export of it (see ``notes/market-research.md`` for each source and the date read);
``%kie4o models --all`` lists the rest with the reason, so no one has to wonder.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CatalogueEntry", "CATALOGUE"]


@dataclass(frozen=True)
class CatalogueEntry:
    """One image model of KIE's catalogue (as of 2026-12-05)."""

    title: str
    #: The docs.kie.ai path of its page.
    doc: str
    #: Our ``--model`` name, or None when it is not registered.
    model: str | None = None
    why_not: str | None = None


def _on(title: str, doc: str, model: str) -> CatalogueEntry:
    return CatalogueEntry(title, doc, model)


def _off(title: str, doc: str, why: str) -> CatalogueEntry:
    return CatalogueEntry(title, doc, None, why)


CATALOGUE: tuple[CatalogueEntry, ...] = (
    _on("GPT-4o Image", "4o-image-api/generate-4-o-image", "4o"),
    _on("GPT Image 1.5", "market/gpt-image/1.5-text-to-image", "gpt-image-1.5"),
    _on("Nano Banana 2", "market/google/nanobanana2", "nano-banana-2"),
    _on("Nano Banana 2 Lite", "market/google/nano-banana-2-lite", "nano-banana-2-lite"),
    _on("Nano Banana Pro", "market/google/pro-image-to-image", "nano-banana-pro"),
    _on("Nano Banana, Nano Banana Edit", "market/google/nano-banana", "nano-banana"),
    _on("Seedream 4.5 (text-to-image, edit)", "market/seedream/4.5-text-to-image",
        "seedream-4.5"),
    _on("Seedream 4.0 (text-to-image, edit)", "market/seedream/seedream-v4-text-to-image",
        "seedream-4.0"),
    _on("Seedream 3.0", "market/seedream/seedream", "seedream-3.0"),
    _on("Z-Image", "market/z-image/z-image", "z-image"),
    _on("Imagen 4", "market/google/imagen4", "imagen-4"),
    _on("Imagen 4 Fast", "market/google/imagen4-fast", "imagen-4-fast"),
    _on("Imagen 4 Ultra", "market/google/imagen4-ultra", "imagen-4-ultra"),
    _on("Qwen text-to-image, image edit", "market/qwen/text-to-image", "qwen-image"),
    _on("Qwen image-to-image", "market/qwen/image-to-image", "qwen-image-to-image"),
    _on("Flux-2 Pro (text-to-image, image-to-image)", "market/flux2/pro-text-to-image",
        "flux-2-pro"),
    _on("Flux-2 Flex (text-to-image, image-to-image)", "market/flux2/flex-text-to-image",
        "flux-2-flex"),
    _on("Flux Kontext Pro", "flux-kontext-api/generate-or-edit-image", "flux-kontext-pro"),
    _on("Flux Kontext Max", "flux-kontext-api/generate-or-edit-image", "flux-kontext-max"),
    _on("Grok Imagine (text-to-image, image-to-image)", "market/grok-imagine/text-to-image",
        "grok-imagine"),
    _off("Grok Imagine Upscale", "market/grok-imagine/upscale",
         "KIE's pages disagree: the newest calls it a video upscale; it takes a KIE task id, "
         "not an image"),
    _on("Ideogram Character", "market/ideogram/character", "ideogram-character"),
    _off("Ideogram Character Edit", "market/ideogram/character-edit",
         "needs an image, a mask and a character reference in three fields; a Market mask "
         "is not offered yet"),
    _off("Ideogram Character Remix", "market/ideogram/character-remix",
         "needs an image and a character reference in two fields; not offered yet"),
    _on("Ideogram V3 Reframe", "market/ideogram/v3-reframe", "ideogram-reframe"),
    _on("Topaz Image Upscale", "market/topaz/image-upscale", "topaz-upscale"),
    _on("Recraft Remove Background", "market/recraft/remove-background",
        "recraft-remove-background"),
    _on("Recraft Crisp Upscale", "market/recraft/crisp-upscale", "recraft-crisp-upscale"),
)
