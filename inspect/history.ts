// `strata history IMAGE`: the image's history, newest first, as docker prints it.
//
// Modern stores follow moby's ImageHistory: one row per config history entry;
// a non-empty entry takes the next layer and that layer's recorded size; the
// image id goes on the newest row and each local parent's id on the row where
// that parent's history ends, the rest are "<missing>". Legacy and registry
// stores: one row per image down the parent chain (docker ≤ 1.9), CREATED BY
// being the image's container_config.Cmd.
import {
  humanDuration, humanDurationLegacy, humanSizeLegacy, humanSizeWithPrecision, truncateId,
} from './docker-units.ts';
import type { StoreModel } from '../layerstore/model.ts';
import { InspectError } from '../layerstore/problems.ts';
import { LEGACY_TABLE, MODERN_TABLE, tabTable } from './tabwriter.ts';

export interface HistoryRow {
  /** image id, or "<missing>" */
  id: string;
  created: string | null;
  createdBy: string;
  /** bytes of the layer this entry added (0 for empty layers) */
  size: number;
  comment: string;
  tags: string[];
}

export function imageHistory(model: StoreModel, imageId: string): HistoryRow[] {
  const img = model.images.get(imageId);
  if (!img) throw new InspectError(`no such image: ${imageId}`);
  // legacy and registry images are one layer each; modern and containerd images list theirs
  if (model.kind === 'legacy' || model.kind === 'registry-v1') {
    return img.layers.slice().reverse().map((id) => {
      const i = model.images.get(id)!;
      const h = i.history[i.history.length - 1];
      return { id, created: h.created?.toISOString() ?? null, createdBy: h.createdBy, size: i.size ?? 0, comment: h.comment, tags: i.tags };
    });
  }
  const rows: HistoryRow[] = [];
  let layer = 0;
  for (const h of img.history) {
    let size = 0;
    if (!h.emptyLayer) {
      const chain = img.layers[layer];
      if (chain === undefined) {
        model.problems.add(img.configPath, 'more non-empty history entries than layers');
      } else {
        size = model.layers.get(chain)?.size ?? 0;
        layer++;
      }
    }
    rows.unshift({ id: '<missing>', created: h.created?.toISOString() ?? null, createdBy: h.createdBy, size, comment: h.comment, tags: [] });
  }
  // fill in ids: the image on the first row, then each parent on the next row
  let cur: string | null = img.id;
  for (const row of rows) {
    if (cur === null) break;
    const i = model.images.get(cur);
    if (!i) break;
    row.id = cur;
    row.tags = i.tags;
    cur = i.parent;
  }
  return rows;
}

export interface HistoryOptions {
  noTrunc?: boolean;
  now?: Date;
}

/** stringutils.Ellipsis (docker ≥ 17): cut to `max` characters, the last one "…". */
function ellipsis(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : chars.slice(0, max - 1).join('') + '…';
}

export function renderHistory(model: StoreModel, rows: HistoryRow[], opts: HistoryOptions = {}): string {
  const now = opts.now ?? new Date();
  const modern = model.era === 'docker-1.10+';
  const ago = (c: string | null) => {
    if (c === null) return 'N/A';
    const ms = now.getTime() - Math.floor(new Date(c).getTime() / 1000) * 1000; // the API carried whole seconds
    return `${modern ? humanDuration(ms) : humanDurationLegacy(ms)} ago`;
  };
  const cells = rows.map((r) => {
    const createdBy = r.createdBy.replace(/\t/g, ' ');
    return [
      r.id === '<missing>' || opts.noTrunc ? r.id : truncateId(r.id),
      ago(r.created),
      opts.noTrunc ? createdBy : modern ? ellipsis(createdBy, 45) : [...createdBy].slice(0, 45).join(''),
      modern ? humanSizeWithPrecision(r.size, 3) : humanSizeLegacy(r.size),
      r.comment,
    ];
  });
  return tabTable(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], cells, modern ? MODERN_TABLE : LEGACY_TABLE);
}
