// Which model the server serves: `GetModelInfo`'s family, shown in the header.
import type { MobilesamClient, ModelInfo } from "@mobilesam/client";

/** Human-readable names of the families `ModelInfo.family` reports. */
const FAMILY_NAMES: Record<string, string> = {
  mobile_sam: "MobileSAM",
  sam_vit_b: "SAM ViT-B",
  sam_vit_l: "SAM ViT-L",
  sam_vit_h: "SAM ViT-H",
  sam_vit: "SAM ViT",
  "sam2.1_hiera_t": "SAM 2.1 Hiera-T",
  "sam2.1_hiera_s": "SAM 2.1 Hiera-S",
  "sam2.1_hiera_b+": "SAM 2.1 Hiera-B+",
  "sam2.1_hiera_l": "SAM 2.1 Hiera-L",
  // Other Hiera sizes, e.g. the reduced test model of tests/fixtures/sam2.
  "sam2.1_hiera": "SAM 2.1 Hiera",
};

/** "SAM 2.1 Hiera-T (sam2.1_hiera_t)"; a family the page does not know is shown raw. */
export function familyLabel(family: string): string {
  const name = FAMILY_NAMES[family];
  return name ? `${name} (${family})` : family || "unknown model";
}

/** Asks the server for its model and shows it in `element`: `data-state` is "loading",
 * then "ready" (with `data-family`, the raw family string) or "error". */
export async function showModel(client: MobilesamClient, element: HTMLElement, describe: (e: unknown) => string): Promise<void> {
  element.dataset.state = "loading";
  element.textContent = "model: …";
  element.classList.remove("error");
  let info: ModelInfo;
  try {
    info = await client.modelInfo({ timeoutMs: 30_000 });
  } catch (error) {
    element.dataset.state = "error";
    element.dataset.family = "";
    element.classList.add("error");
    element.textContent = `model: unavailable (${describe(error)})`;
    element.title = "GetModelInfo failed";
    return;
  }
  element.dataset.family = info.family;
  element.dataset.memoryTracking = String(info.memoryTracking);
  element.textContent = `model: ${familyLabel(info.family)}`;
  element.title = [
    `name: ${info.name}`,
    `family: ${info.family || "(none)"}`,
    `parameters: ${info.parameters.toLocaleString("en")}`,
    `device: ${info.device}`,
    `image size: ${info.imageSize}`,
    `memory tracking: ${info.memoryTracking ? "yes (SAM 2 memory bank)" : "no"}`,
  ].join("\n");
  element.dataset.state = "ready";
}
