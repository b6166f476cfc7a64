import { Message } from "./decorators.js";

/**
 * The message with no fields (google.protobuf.Empty): the input of a method that takes no
 * arguments and the output of one that returns nothing.
 */
@Message({ name: "Empty" })
export class Empty {}
