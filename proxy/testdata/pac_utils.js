// The PAC helper functions as browsers define them, for evaluating
// hopscope's PAC file in tests. The definitions follow Mozilla's
// ascii_pac_utils.js (which Chromium's pac_js_library matches); dnsResolve
// and myIpAddress are supplied by the test, which records every call, since
// a PAC file that resolves names stalls the browser.

function dnsDomainIs(host, domain) {
  return host.length >= domain.length &&
    host.substring(host.length - domain.length) == domain;
}

function dnsDomainLevels(host) {
  return host.split('.').length - 1;
}

function isValidIpAddress(ipchars) {
  var matches = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ipchars);
  if (matches == null) return false;
  if (matches[1] > 255 || matches[2] > 255 || matches[3] > 255 || matches[4] > 255) return false;
  return true;
}

function convert_addr(ipchars) {
  var bytes = ipchars.split('.');
  return ((bytes[0] & 0xff) << 24) | ((bytes[1] & 0xff) << 16) |
    ((bytes[2] & 0xff) << 8) | (bytes[3] & 0xff);
}

function isInNet(ipaddr, pattern, maskstr) {
  if (!isValidIpAddress(pattern) || !isValidIpAddress(maskstr)) return false;
  if (!isValidIpAddress(ipaddr)) {
    ipaddr = dnsResolve(ipaddr);
    if (ipaddr == null) return false;
  }
  var host = convert_addr(ipaddr);
  var pat = convert_addr(pattern);
  var mask = convert_addr(maskstr);
  return (host & mask) == (pat & mask);
}

function isPlainHostName(host) {
  return host.search('(\\.)|:') == -1;
}

function isResolvable(host) {
  var ip = dnsResolve(host);
  return ip != null;
}

function localHostOrDomainIs(host, hostdom) {
  return host == hostdom || hostdom.lastIndexOf(host + '.', 0) == 0;
}

function shExpMatch(url, pattern) {
  pattern = pattern.replace(/\./g, '\\.');
  pattern = pattern.replace(/\*/g, '.*');
  pattern = pattern.replace(/\?/g, '.');
  var newRe = new RegExp('^' + pattern + '$');
  return newRe.test(url);
}
