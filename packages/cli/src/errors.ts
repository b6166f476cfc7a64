import { defineErrors } from "@gantry/core";

/** Errors of the gantry command. A usage error exits with status 2, every other error with 1. */
export const cliErrors = defineErrors({
  GANTRY_ERR_USAGE: {
    status: "INVALID_ARGUMENT",
    message: "{problem}",
  },
  GANTRY_ERR_ENTRY_NOT_FOUND: {
    status: "NOT_FOUND",
    message: "{entry} does not exist{hint}",
  },
  GANTRY_ERR_ENTRY_LOAD: {
    status: "FAILED_PRECONDITION",
    message: "{entry} failed to load: {reason}",
  },
  GANTRY_ERR_NO_APP: {
    status: "FAILED_PRECONDITION",
    message: "{entry} exports no Gantry app; export one: export default createApp({ ... })",
  },
});
