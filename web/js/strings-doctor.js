// strings-doctor.js - every text of the doctor's page (/doctor), in English and Arabic.
// Shared texts (the language switch, connection states, error codes, media controls)
// are in strings-common.js. Placeholders: {name} a patient's name (shown in a <bdi>; kept out
// of texts that stay beside the queue, where the name would appear twice),
// {clinic} a clinic's name, {time} a formatDuration(), {count}/{seconds}/{level} numbers.

import { addStrings } from './i18n.js';

const en = {
  'doctor.brand': 'Tabib · Doctor',
  'doctor.signedInAs': 'Signed in as {name}',
  'doctor.signOut': 'Sign out',

  'doctor.title.signIn': 'Sign in — Tabib doctor',
  'doctor.title.queue': 'Queue — Tabib doctor',
  'doctor.title.queueWaiting': '({count}) Queue — Tabib doctor',
  'doctor.title.consultation': 'Consultation — Tabib doctor',

  // Sign-in
  'doctor.signIn.heading': 'Doctor sign-in',
  'doctor.signIn.intro': 'Sign in to go on duty and see your patients.',
  'doctor.signIn.username': 'Username',
  'doctor.signIn.password': 'Password',
  'doctor.signIn.submit': 'Sign in',
  'doctor.signIn.busy': 'Signing in…',
  'doctor.signIn.resuming': 'Signing you in again…',
  'doctor.signIn.missing': 'Enter your username and password.',
  'doctor.signIn.wrong': 'Wrong username or password. Check them and try again.',
  'doctor.signIn.throttled':
    'Too many failed sign-ins. Sign-in is paused for a short while (up to a minute): wait, then try again.',
  'doctor.signIn.failed': 'The sign-in did not work. Please try again.',
  'doctor.signIn.notDoctor': 'This page is for doctors. Administrators sign in on the administration page.',
  'doctor.signIn.signedOut': 'You are signed out.',

  // The desk
  'doctor.desk.heading': 'Doctor’s desk',

  // Duty
  'doctor.duty.heading': 'Your clinics',
  'doctor.duty.legend': 'On duty',
  'doctor.duty.on': 'On duty',
  'doctor.duty.off': 'Off duty',
  'doctor.duty.none': 'No clinics are assigned to your account. Ask an administrator.',
  'doctor.duty.nowOn': 'You are on duty for {clinic}.',
  'doctor.duty.nowOff': 'You are off duty for {clinic}.',
  'doctor.duty.busy': 'End the consultation or return the patient to the queue before going off duty for that clinic.',

  // Queues
  'doctor.queue.heading': 'Waiting patients',
  'doctor.queue.offDuty': 'Go on duty for a clinic to see its queue.',
  'doctor.queue.count': '{count} waiting',
  'doctor.queue.countOne': '1 waiting',
  'doctor.queue.urgentCount': '{count} urgent',
  'doctor.queue.doctors': '{count} doctors on duty',
  'doctor.queue.callNext': 'Call next patient',
  'doctor.queue.empty': 'Nobody is waiting. New patients appear here by themselves.',
  'doctor.queue.busy': 'Finish the current consultation before calling another patient.',
  'doctor.queue.busyAlert': 'You are with {name}. End the consultation or return them to the queue first.',
  'doctor.queue.noneWaiting': 'No patient is waiting in {clinic}.',
  'doctor.queue.urgent': 'Urgent',
  'doctor.queue.waited': 'Waiting {time}',
  'doctor.queue.ready': 'Devices checked',
  'doctor.queue.notReady': 'Devices not checked yet',
  'doctor.queue.disconnected': 'Connection lost',
  'doctor.queue.call': 'Call',
  'doctor.queue.transfer': 'Transfer',
  'doctor.queue.transferTarget': 'Clinic to transfer to:',
  'doctor.queue.arrived': 'A patient joined the queue of {clinic}. Waiting now: {count}.',
  'doctor.queue.arrivedUrgent': 'An urgent patient joined the queue of {clinic}. Waiting now: {count}.',

  // The consultation
  'doctor.consult.idleHeading': 'No consultation',
  'doctor.consult.idleHint': 'Call the next patient when you are ready: their video appears here. Below is your own camera.',
  'doctor.consult.heading': 'Consultation with {name}',
  'doctor.consult.calling': 'Calling {name}…',
  'doctor.consult.waitingAccept': 'Calling {name}: waiting for them to answer',
  'doctor.consult.inProgress': 'In consultation',
  'doctor.consult.startedAnnounce': '{name} joined the consultation.',
  'doctor.consult.ref': 'Reference {ref}',
  'doctor.consult.return': 'Return to queue',
  'doctor.consult.end': 'End consultation',
  'doctor.consult.transferTo': 'Transfer to clinic',
  'doctor.consult.transfer': 'Transfer',

  'doctor.endDialog.heading': 'End the consultation?',
  'doctor.endDialog.text': 'The consultation with {name} ends for both of you.',
  'doctor.endDialog.confirm': 'Yes, end it',

  'doctor.ended.completed': 'The consultation has ended.',
  'doctor.ended.doctor_ended': 'You ended the call before the patient answered.',
  'doctor.ended.patient_left': 'The patient left the consultation.',
  'doctor.ended.abandoned': 'The patient did not come back, so the call was closed.',
  'doctor.ended.connection_lost': 'The connection with the patient was lost, so the consultation ended.',
  'doctor.ended.transferred': 'The patient was transferred to another clinic.',
  'doctor.ended.server_shutdown': 'The server is restarting, so the consultation ended.',
  'doctor.ended.gone': 'That consultation is no longer open.',
  'doctor.ended.other': 'The consultation has ended.',
  'doctor.returned': 'The patient is back in the queue at their place.',
  'doctor.transferred': 'The patient was transferred to {clinic}.',

  // The patient's connection (peer events)
  'doctor.peer.disconnected': '{name}’s connection dropped. Waiting for them to come back…',
  'doctor.peer.disconnectedCountdown': '{name}’s connection dropped. Waiting for them to come back: {time} left.',
  'doctor.peer.disconnectedAnnounce': '{name}’s connection dropped. They have {seconds} seconds to come back.',
  'doctor.peer.mediaLost': '{name}’s video and sound were lost. Waiting for them to come back…',
  'doctor.peer.mediaLostCountdown':
    '{name}’s video and sound were lost. The consultation ends in {time} unless they come back.',
  'doctor.peer.mediaLostAnnounce':
    '{name}’s video and sound were lost. The consultation ends in {seconds} seconds unless they come back.',
  'doctor.peer.back': '{name} is connected again.',
  'doctor.peer.mediaBack': 'Sound from {name} is coming through again.',

  // Sound
  'doctor.audio.patientSilent':
    'No sound from {name}’s microphone: it sends silence. Ask them (in the chat, by phone or by gesture) to check that it is not muted.',
  'doctor.audio.patientNoPackets':
    'No sound is arriving from {name}. Their microphone may be off or their connection may be failing.',
  'doctor.audio.selfSilent': 'Your microphone sends silence. Check that it is not muted on the device or in the system.',
  'doctor.audio.selfNoPackets': 'No sound from your microphone reaches the server. Check your microphone and connection.',
  'doctor.level.patient': 'Patient’s voice level',
  'doctor.level.own': 'Your microphone level',
  'doctor.level.speaking': 'Speaking',
  'doctor.level.value': '{level} out of {max}',

  // Video
  'doctor.video.patient': 'Patient’s video',
  'doctor.stage.calling': 'Waiting for {name} to answer…',
  'doctor.stage.audioOnly': 'Audio only: {name}’s video is hidden and yours is not sent.',
  'doctor.self.cameraOff': 'Camera off',
  'doctor.self.noVideo': 'No video',
  'doctor.media.playSound': 'Turn on the sound',
  'doctor.media.retry': 'Start camera and microphone',
  'doctor.media.failed': 'The video connection could not be set up: {reason} Trying again…',
};

const ar = {
  'doctor.brand': 'طبيب · الطبيب',
  'doctor.signedInAs': 'تم تسجيل الدخول باسم {name}',
  'doctor.signOut': 'تسجيل الخروج',

  'doctor.title.signIn': 'تسجيل الدخول — طبيب',
  'doctor.title.queue': 'قائمة الانتظار — طبيب',
  'doctor.title.queueWaiting': '({count}) قائمة الانتظار — طبيب',
  'doctor.title.consultation': 'استشارة — طبيب',

  'doctor.signIn.heading': 'تسجيل دخول الطبيب',
  'doctor.signIn.intro': 'سجّل الدخول لتبدأ المناوبة وترى مرضاك.',
  'doctor.signIn.username': 'اسم المستخدم',
  'doctor.signIn.password': 'كلمة المرور',
  'doctor.signIn.submit': 'تسجيل الدخول',
  'doctor.signIn.busy': 'جارٍ تسجيل الدخول…',
  'doctor.signIn.resuming': 'جارٍ تسجيل دخولك من جديد…',
  'doctor.signIn.missing': 'أدخل اسم المستخدم وكلمة المرور.',
  'doctor.signIn.wrong': 'اسم المستخدم أو كلمة المرور غير صحيح. تحقّق منهما وحاول مرة أخرى.',
  'doctor.signIn.throttled':
    'محاولات دخول فاشلة كثيرة. توقّف تسجيل الدخول لفترة قصيرة (حتى دقيقة): انتظر ثم حاول مرة أخرى.',
  'doctor.signIn.failed': 'لم ينجح تسجيل الدخول. يُرجى المحاولة مرة أخرى.',
  'doctor.signIn.notDoctor': 'هذه الصفحة للأطباء. يسجّل المسؤولون الدخول من صفحة الإدارة.',
  'doctor.signIn.signedOut': 'تم تسجيل خروجك.',

  'doctor.desk.heading': 'مكتب الطبيب',

  'doctor.duty.heading': 'عياداتك',
  'doctor.duty.legend': 'في المناوبة',
  'doctor.duty.on': 'في المناوبة',
  'doctor.duty.off': 'خارج المناوبة',
  'doctor.duty.none': 'لا توجد عيادات مخصّصة لحسابك. تواصل مع أحد المسؤولين.',
  'doctor.duty.nowOn': 'أنت الآن في المناوبة في {clinic}.',
  'doctor.duty.nowOff': 'أنت الآن خارج المناوبة في {clinic}.',
  'doctor.duty.busy': 'أنهِ الاستشارة أو أعِد المريض إلى قائمة الانتظار قبل إنهاء مناوبتك في هذه العيادة.',

  'doctor.queue.heading': 'المرضى المنتظرون',
  'doctor.queue.offDuty': 'ابدأ المناوبة في عيادة لترى قائمة انتظارها.',
  'doctor.queue.count': 'المنتظرون: {count}',
  'doctor.queue.countOne': 'مريض واحد ينتظر',
  'doctor.queue.urgentCount': 'الحالات العاجلة: {count}',
  'doctor.queue.doctors': 'الأطباء في المناوبة: {count}',
  'doctor.queue.callNext': 'استدعاء المريض التالي',
  'doctor.queue.empty': 'لا أحد ينتظر. يظهر المرضى الجدد هنا تلقائيًا.',
  'doctor.queue.busy': 'أنهِ الاستشارة الحالية قبل استدعاء مريض آخر.',
  'doctor.queue.busyAlert': 'أنت مع {name}. أنهِ الاستشارة أو أعِده إلى قائمة الانتظار أولًا.',
  'doctor.queue.noneWaiting': 'لا يوجد مريض ينتظر في {clinic}.',
  'doctor.queue.urgent': 'عاجل',
  'doctor.queue.waited': 'ينتظر منذ {time}',
  'doctor.queue.ready': 'تم فحص الأجهزة',
  'doctor.queue.notReady': 'لم تُفحص الأجهزة بعد',
  'doctor.queue.disconnected': 'انقطع الاتصال',
  'doctor.queue.call': 'استدعاء',
  'doctor.queue.transfer': 'تحويل',
  'doctor.queue.transferTarget': 'العيادة التي يُحوَّل إليها:',
  'doctor.queue.arrived': 'انضم مريض إلى قائمة انتظار {clinic}. المنتظرون الآن: {count}.',
  'doctor.queue.arrivedUrgent': 'انضمت حالة عاجلة إلى قائمة انتظار {clinic}. المنتظرون الآن: {count}.',

  'doctor.consult.idleHeading': 'لا توجد استشارة',
  'doctor.consult.idleHint': 'استدعِ المريض التالي عندما تكون مستعدًا: يظهر الفيديو الخاص به هنا. وفي الأسفل كاميرتك.',
  'doctor.consult.heading': 'استشارة مع {name}',
  'doctor.consult.calling': 'جارٍ استدعاء {name}…',
  'doctor.consult.waitingAccept': 'جارٍ استدعاء {name}: بانتظار ردّه',
  'doctor.consult.inProgress': 'الاستشارة جارية',
  'doctor.consult.startedAnnounce': 'انضم {name} إلى الاستشارة.',
  'doctor.consult.ref': 'المرجع {ref}',
  'doctor.consult.return': 'إعادة إلى قائمة الانتظار',
  'doctor.consult.end': 'إنهاء الاستشارة',
  'doctor.consult.transferTo': 'التحويل إلى عيادة',
  'doctor.consult.transfer': 'تحويل',

  'doctor.endDialog.heading': 'إنهاء الاستشارة؟',
  'doctor.endDialog.text': 'ستنتهي الاستشارة مع {name} لكليكما.',
  'doctor.endDialog.confirm': 'نعم، أنهِها',

  'doctor.ended.completed': 'انتهت الاستشارة.',
  'doctor.ended.doctor_ended': 'أنهيت الاتصال قبل أن يردّ المريض.',
  'doctor.ended.patient_left': 'غادر المريض الاستشارة.',
  'doctor.ended.abandoned': 'لم يعد المريض، لذلك أُغلق الاتصال.',
  'doctor.ended.connection_lost': 'انقطع الاتصال مع المريض، لذلك انتهت الاستشارة.',
  'doctor.ended.transferred': 'تم تحويل المريض إلى عيادة أخرى.',
  'doctor.ended.server_shutdown': 'يُعاد تشغيل الخادم، لذلك انتهت الاستشارة.',
  'doctor.ended.gone': 'لم تعد تلك الاستشارة مفتوحة.',
  'doctor.ended.other': 'انتهت الاستشارة.',
  'doctor.returned': 'عاد المريض إلى مكانه في قائمة الانتظار.',
  'doctor.transferred': 'تم تحويل المريض إلى {clinic}.',

  'doctor.peer.disconnected': 'انقطع اتصال {name}. بانتظار عودته…',
  'doctor.peer.disconnectedCountdown': 'انقطع اتصال {name}. بانتظار عودته: بقي {time}.',
  'doctor.peer.disconnectedAnnounce': 'انقطع اتصال {name}. أمامه {seconds} ثانية للعودة.',
  'doctor.peer.mediaLost': 'انقطع صوت {name} وصورته. بانتظار عودته…',
  'doctor.peer.mediaLostCountdown': 'انقطع صوت {name} وصورته. تنتهي الاستشارة بعد {time} ما لم يعد.',
  'doctor.peer.mediaLostAnnounce': 'انقطع صوت {name} وصورته. تنتهي الاستشارة بعد {seconds} ثانية ما لم يعد.',
  'doctor.peer.back': 'عاد اتصال {name}.',
  'doctor.peer.mediaBack': 'عاد صوت {name} يصل من جديد.',

  'doctor.audio.patientSilent':
    'لا يصل صوت من ميكروفون {name}: إنه يرسل صمتًا. اطلب منه (كتابةً أو بالهاتف أو بالإشارة) أن يتأكد أنه غير مكتوم.',
  'doctor.audio.patientNoPackets': 'لا يصل أي صوت من {name}. ربما الميكروفون متوقف أو الاتصال ضعيف.',
  'doctor.audio.selfSilent': 'ميكروفونك يرسل صمتًا. تأكّد أنه غير مكتوم في الجهاز أو في النظام.',
  'doctor.audio.selfNoPackets': 'لا يصل صوت ميكروفونك إلى الخادم. تحقّق من الميكروفون والاتصال.',
  'doctor.level.patient': 'مستوى صوت المريض',
  'doctor.level.own': 'مستوى صوت ميكروفونك',
  'doctor.level.speaking': 'يتحدث',
  'doctor.level.value': '{level} من {max}',

  'doctor.video.patient': 'فيديو المريض',
  'doctor.stage.calling': 'بانتظار ردّ {name}…',
  'doctor.stage.audioOnly': 'الصوت فقط: فيديو {name} مخفي ولا يُرسل الفيديو الخاص بك.',
  'doctor.self.cameraOff': 'الكاميرا متوقفة',
  'doctor.self.noVideo': 'لا فيديو',
  'doctor.media.playSound': 'تشغيل الصوت',
  'doctor.media.retry': 'تشغيل الكاميرا والميكروفون',
  'doctor.media.failed': 'تعذّر إعداد اتصال الفيديو: {reason} جارٍ المحاولة مجددًا…',
};

addStrings({ en, ar });
