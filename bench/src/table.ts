/** Plain-text tables for the terminal: columns padded to their widest cell. */

export type Align = "left" | "right";

export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[]) {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (align[i] === "right" ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function formatInteger(value: number): string {
  return Number.isNaN(value) ? "n/a" : Math.round(value).toLocaleString("en-US");
}

export function formatPercent(share: number, digits = 0): string {
  return Number.isNaN(share) ? "n/a" : `${(share * 100).toFixed(digits)}%`;
}

export function formatMs(ms: number): string {
  return Number.isNaN(ms) ? "n/a" : `${ms.toFixed(2)} ms`;
}
