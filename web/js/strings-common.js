// strings-common.js - texts every page shares: the language switch, connection
// states, error codes of the protocol, devices and media controls.
import { addStrings, t, hasString } from './i18n.js';

addStrings({
  en: {
    'lang.switch': 'Change language',

    'common.appName': 'Tabib',
    'common.skipToContent': 'Skip to main content',
    'common.loading': 'Loading…',
    'common.ok': 'OK',
    'common.cancel': 'Cancel',
    'common.close': 'Close',
    'common.retry': 'Try again',
    'common.back': 'Back',
    'common.continue': 'Continue',
    'common.yes': 'Yes',
    'common.no': 'No',
    'common.home': 'Start page',

    // The connection to the server (Signal states).
    'common.connecting': 'Connecting to the server…',
    'common.reconnecting': 'Connection lost. Reconnecting…',
    'common.reconnected': 'Connected again.',
    'common.offline': 'The connection to the server is closed.',
    'common.cannotConnect': 'The server cannot be reached. Check your internet connection and try again.',
    'common.close.4001': 'This session was opened in another window or tab, so it was closed here.',
    'common.close.4002': 'Your session ended. Please sign in again.',
    'common.close.4003': 'This account was disabled.',
    'common.close.1008': 'The server closed the connection: {reason}',

    // Error codes of the tabib.v1 protocol.
    'common.error.bad_json': 'The app sent a message the server could not read.',
    'common.error.bad_request': 'The server refused the request: {message}',
    'common.error.unknown_type': 'The server does not know this request.',
    'common.error.unauthorized': 'You are not signed in, or your sign-in has expired.',
    'common.error.forbidden': 'You are not allowed to do this.',
    'common.error.not_found': 'Not found: it may have expired or been used already.',
    'common.error.conflict': 'This cannot be done right now.',
    'common.error.queue_full': 'The queue is full at the moment. Please try again later.',
    'common.error.clinic_closed': 'The clinic is closed now. Please come back during its opening hours.',
    'common.error.rate_limited': 'Too many attempts. Please wait a moment and try again.',
    'common.error.bad_sdp': 'Your browser’s video call could not be set up.',
    'common.error.unavailable': 'The video service is busy or unavailable. Please try again.',
    'common.error.internal': 'The server had a problem. Please try again.',
    'common.error.timeout': 'The server did not answer in time. Please try again.',
    'common.error.disconnected': 'The connection dropped before the server answered. Please try again.',
    'common.error.closed': 'Not connected to the server.',
    'common.error.connect_failed': 'The server cannot be reached. Check your internet connection and try again.',
    'common.error.unknown': 'Something went wrong. Please try again.',

    // Devices.
    'common.camera': 'Camera',
    'common.microphone': 'Microphone',
    'common.cameraN': 'Camera {n}',
    'common.microphoneN': 'Microphone {n}',
    'common.micLevel': 'Microphone level',
    'common.noCamera': 'No camera',
    'common.device.NotAllowedError':
      'The browser is not allowed to use your camera and microphone. Open the site settings (the lock or settings icon next to the address), allow Camera and Microphone for this site, then try again.',
    'common.device.NotFoundError': 'No camera or microphone was found. Check that one is connected.',
    'common.device.NotReadableError':
      'Your camera or microphone is being used by another app. Close that app (or other calls), then try again.',
    'common.device.OverconstrainedError': 'The chosen camera or microphone is no longer available.',
    'common.device.NotSupportedError':
      'This browser cannot use a camera or microphone here. Please use an up-to-date Chrome, Edge, Firefox or Safari.',
    'common.device.other': 'The camera or microphone could not be started ({name}).',

    // Media controls (a consultation on either side).
    'common.mute': 'Mute microphone',
    'common.unmute': 'Unmute microphone',
    'common.micOn': 'Microphone on',
    'common.micOff': 'Microphone off',
    'common.cameraOff': 'Turn camera off',
    'common.cameraOn': 'Turn camera on',
    'common.switchCamera': 'Switch camera',
    'common.audioOnly': 'Audio only',
    'common.remoteVideo': 'Video of the other person',
    'common.selfView': 'Your own video',
  },
  ar: {
    'lang.switch': 'تغيير اللغة',

    'common.appName': 'طبيب',
    'common.skipToContent': 'انتقل إلى المحتوى الرئيسي',
    'common.loading': 'جارٍ التحميل…',
    'common.ok': 'حسنًا',
    'common.cancel': 'إلغاء',
    'common.close': 'إغلاق',
    'common.retry': 'حاول مرة أخرى',
    'common.back': 'رجوع',
    'common.continue': 'متابعة',
    'common.yes': 'نعم',
    'common.no': 'لا',
    'common.home': 'الصفحة الرئيسية',

    'common.connecting': 'جارٍ الاتصال بالخادم…',
    'common.reconnecting': 'انقطع الاتصال. جارٍ إعادة الاتصال…',
    'common.reconnected': 'عاد الاتصال.',
    'common.offline': 'الاتصال بالخادم مغلق.',
    'common.cannotConnect': 'تعذّر الوصول إلى الخادم. تحقّق من اتصالك بالإنترنت وحاول مرة أخرى.',
    'common.close.4001': 'فُتحت هذه الجلسة في نافذة أو علامة تبويب أخرى، لذلك أُغلقت هنا.',
    'common.close.4002': 'انتهت جلستك. يُرجى تسجيل الدخول مرة أخرى.',
    'common.close.4003': 'تم تعطيل هذا الحساب.',
    'common.close.1008': 'أغلق الخادم الاتصال: {reason}',

    'common.error.bad_json': 'أرسل التطبيق رسالة لم يتمكّن الخادم من قراءتها.',
    'common.error.bad_request': 'رفض الخادم الطلب: {message}',
    'common.error.unknown_type': 'لا يعرف الخادم هذا الطلب.',
    'common.error.unauthorized': 'لم تسجّل الدخول، أو انتهت صلاحية تسجيل دخولك.',
    'common.error.forbidden': 'غير مسموح لك بهذا الإجراء.',
    'common.error.not_found': 'غير موجود: ربما انتهت صلاحيته أو استُخدم من قبل.',
    'common.error.conflict': 'لا يمكن تنفيذ هذا الآن.',
    'common.error.queue_full': 'قائمة الانتظار ممتلئة حاليًا. يُرجى المحاولة لاحقًا.',
    'common.error.clinic_closed': 'العيادة مغلقة الآن. يُرجى العودة خلال ساعات العمل.',
    'common.error.rate_limited': 'محاولات كثيرة جدًا. انتظر قليلًا ثم حاول مرة أخرى.',
    'common.error.bad_sdp': 'تعذّر إعداد مكالمة الفيديو في متصفحك.',
    'common.error.unavailable': 'خدمة الفيديو مشغولة أو غير متاحة. يُرجى المحاولة مرة أخرى.',
    'common.error.internal': 'حدثت مشكلة في الخادم. يُرجى المحاولة مرة أخرى.',
    'common.error.timeout': 'لم يردّ الخادم في الوقت المحدد. يُرجى المحاولة مرة أخرى.',
    'common.error.disconnected': 'انقطع الاتصال قبل أن يردّ الخادم. يُرجى المحاولة مرة أخرى.',
    'common.error.closed': 'غير متصل بالخادم.',
    'common.error.connect_failed': 'تعذّر الوصول إلى الخادم. تحقّق من اتصالك بالإنترنت وحاول مرة أخرى.',
    'common.error.unknown': 'حدث خطأ ما. يُرجى المحاولة مرة أخرى.',

    'common.camera': 'الكاميرا',
    'common.microphone': 'الميكروفون',
    'common.cameraN': 'الكاميرا {n}',
    'common.microphoneN': 'الميكروفون {n}',
    'common.micLevel': 'مستوى صوت الميكروفون',
    'common.noCamera': 'لا توجد كاميرا',
    'common.device.NotAllowedError':
      'المتصفح غير مسموح له باستخدام الكاميرا والميكروفون. افتح إعدادات الموقع (رمز القفل أو الإعدادات بجانب العنوان)، واسمح بالكاميرا والميكروفون لهذا الموقع، ثم حاول مرة أخرى.',
    'common.device.NotFoundError': 'لم يتم العثور على كاميرا أو ميكروفون. تأكّد من توصيل أحدهما.',
    'common.device.NotReadableError':
      'الكاميرا أو الميكروفون قيد الاستخدام في تطبيق آخر. أغلق ذلك التطبيق (أو المكالمات الأخرى)، ثم حاول مرة أخرى.',
    'common.device.OverconstrainedError': 'الكاميرا أو الميكروفون المختار لم يعد متاحًا.',
    'common.device.NotSupportedError':
      'لا يستطيع هذا المتصفح استخدام الكاميرا أو الميكروفون هنا. يُرجى استخدام إصدار حديث من كروم أو إيدج أو فايرفوكس أو سفاري.',
    'common.device.other': 'تعذّر تشغيل الكاميرا أو الميكروفون ({name}).',

    'common.mute': 'كتم الميكروفون',
    'common.unmute': 'إلغاء كتم الميكروفون',
    'common.micOn': 'الميكروفون يعمل',
    'common.micOff': 'الميكروفون مكتوم',
    'common.cameraOff': 'إيقاف الكاميرا',
    'common.cameraOn': 'تشغيل الكاميرا',
    'common.switchCamera': 'تبديل الكاميرا',
    'common.audioOnly': 'الصوت فقط',
    'common.remoteVideo': 'فيديو الطرف الآخر',
    'common.selfView': 'الفيديو الخاص بك',
  },
});

/**
 * The words for an Error from Signal.request (its .code; bad_request shows the server's
 * message), or for a getUserMedia DOMException (its .name), in the current language.
 */
export function errorText(err) {
  if (err instanceof DOMException || (err?.name && !err?.code && hasString(`common.device.${err.name}`))) {
    const key = `common.device.${err.name}`;
    return hasString(key) ? t(key) : t('common.device.other', { name: err.name });
  }
  const key = `common.error.${err?.code}`;
  return hasString(key) ? t(key, { message: err?.message ?? '' }) : t('common.error.unknown');
}
