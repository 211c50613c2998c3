/** The Trellis release, as `trellis --version`, User-Agents and the injector's status annotation show it. */
export const TRELLIS_VERSION = '0.1.0';
