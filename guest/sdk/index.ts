// The ftwasm guest SDK: `import * as ft from "../sdk"`. See docs/ABI.md for the contract underneath.

export * from "./ft";
export * from "./utf8";
export * from "./text";
